"""API v1 routes: one router for every resource."""

from rest_framework.routers import SimpleRouter

from accounts import api_views as accounts
from audit import api_views as audit
from transfers import api_views as transfers

router = SimpleRouter()
router.register("partners", accounts.PartnerViewSet, basename="partner")
router.register("users", accounts.UserViewSet, basename="user")
router.register("certificates", accounts.ClientCertificateViewSet, basename="certificate")
router.register("pgp-keys", accounts.PgpKeyViewSet, basename="pgp-key")
router.register("tokens", accounts.ApiTokenViewSet, basename="token")
router.register("bans", accounts.BanViewSet, basename="ban")
router.register("files", transfers.StoredFileViewSet, basename="file")
router.register("audit-events", audit.AuditEventViewSet, basename="audit-event")

urlpatterns = router.urls
