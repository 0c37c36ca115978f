"""A cheap Argon2 for the test suite: the same hasher and code path, small parameters.

Hundreds of tests create users; at the product's Argon2 cost (about 130 ms and 100 MiB a
check on these machines) that alone took minutes. `make bench` measures the real cost.
"""

from django.contrib.auth.hashers import Argon2PasswordHasher


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 1024
    parallelism = 1
