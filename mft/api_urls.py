"""API v1 routes: one router for every resource."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts import api_views as accounts
from audit import api_views as audit
from deliveries import api_views as deliveries
from expected import api_views as expected
from mft import posture_api, server_certificate_api
from notifications import api_views as notifications
from retention import api_views as retention
from transfers import api_views as transfers
from transfers import session_api

router = SimpleRouter()
router.register("partners", accounts.PartnerViewSet, basename="partner")
router.register("users", accounts.UserViewSet, basename="user")
router.register("certificates", accounts.ClientCertificateViewSet, basename="certificate")
router.register("pgp-keys", accounts.PgpKeyViewSet, basename="pgp-key")
router.register("tokens", accounts.ApiTokenViewSet, basename="token")
router.register("bans", accounts.BanViewSet, basename="ban")
router.register("files", transfers.StoredFileViewSet, basename="file")
router.register("endpoints", deliveries.PartnerEndpointViewSet, basename="endpoint")
router.register("routes", deliveries.RouteViewSet, basename="route")
router.register("pulls", deliveries.PullViewSet, basename="pull")
router.register("deliveries", deliveries.DeliveryViewSet, basename="delivery")
router.register("expected-files", expected.ExpectedFileViewSet, basename="expected-file")
router.register("retention-policies", retention.RetentionPolicyViewSet,
                basename="retention-policy")
router.register("audit-events", audit.AuditEventViewSet, basename="audit-event")
router.register("sessions", session_api.GatewaySessionViewSet, basename="session")
router.register("posture", posture_api.PostureViewSet, basename="posture")

urlpatterns = [*router.urls,
               path("events/", notifications.EventFeedView.as_view(), name="event-feed"),
               path("server-certificate/", server_certificate_api.ServerCertificateView.as_view(),
                    name="server-certificate")]
