"""Export and import the platform's configuration as one signed JSON document.

`sections` says which models are carried and how each row is named (natural keys),
`document` signs and checks the envelope, `services` exports and imports in one
transaction. The management commands `export_config` and `import_config` are thin edges.
"""
