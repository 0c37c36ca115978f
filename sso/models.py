"""Who signs in through the identity provider, and the second factor it vouched for."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_otp.models import Device


class SsoIdentity(models.Model):
    """The provider account (issuer and subject) a dashboard user signs in with.

    Its presence marks the user as coming from single sign-on: role and names follow the
    provider's claims on every sign-in, and the local password stays unusable.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="sso_identity")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "SSO identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"],
                                               name="sso_identity_issuer_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class IdentityProviderDevice(Device):
    """The second factor the identity provider asserted (its `amr` claim) for a session.

    django-otp marks a session verified by a device; this one stands for the provider's
    check and never accepts a code here, so it cannot replace the local authenticator.
    """

    # No reverse accessor: django-otp finds devices by filtering, and the type checker
    # cannot resolve one through django-otp's untyped base class.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+",
                             help_text="The user that this device belongs to.")

    def verify_token(self, token: str) -> bool:
        """Accept no code: the provider verified the second factor, not Portside."""
        return False
