"""Dashboard routes, mounted at the site root."""

from django.urls import path

from dashboard.views import account, audit, bans, files, login, overview, partners

app_name = "dashboard"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("overview/health/", overview.health_panel, name="health"),
    path("login/", login.login, name="login"),
    path("login/verify/", login.verify, name="login-verify"),
    path("login/enrol/", login.enrol, name="login-enrol"),
    path("logout/", login.logout, name="logout"),
    path("account/", account.account, name="account"),
    path("account/password/", account.change_password, name="password"),
    path("account/recovery-codes/", account.recovery_codes, name="recovery-codes"),
    path("files/", files.file_list, name="files"),
    path("files/<int:pk>/", files.file_detail, name="file-detail"),
    path("files/<int:pk>/review/", files.file_review, name="file-review"),
    path("partners/", partners.partner_list, name="partners"),
    path("partners/new/", partners.partner_new, name="partner-new"),
    path("partners/<int:pk>/", partners.partner_detail, name="partner-detail"),
    path("partners/<int:pk>/connection/<str:username>/", partners.connection_sheet,
         name="connection-sheet"),
    path("connection/server-certificate.pem", partners.server_certificate,
         name="server-certificate"),
    path("audit/", audit.audit_log, name="audit"),
    path("audit/export.csv", audit.audit_export, name="audit-export"),
    path("audit/verify/", audit.audit_verify, name="audit-verify"),
    path("bans/", bans.ban_list, name="bans"),
    path("bans/<int:pk>/lift/", bans.ban_lift, name="ban-lift"),
]
