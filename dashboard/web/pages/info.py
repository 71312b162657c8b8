"""Privacy and retention, and the bilingual CCTV notice for site entrances (PDPO, Cap. 486)."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dashboard import i18n
from dashboard.auth.deps import Ctx
from dashboard.i18n.labels import N_
from dashboard.web.deps import Setup, optional_principal, request_locale
from dashboard.web.templating import Page, render

router = APIRouter()

#: The notice's text, shown in English and Traditional Chinese side by side whatever the page language.
NOTICE: Final = {
    "title": N_("CCTV in operation"),
    "lead": N_("This construction site is monitored by safety cameras."),
    "purpose_h": N_("Purpose"),
    "purpose": N_(
        "Worker safety only: detecting missing hard hats and hi-vis vests, and people inside danger zones, "
        "so that the site team can act at once."
    ),
    "operator_h": N_("Operated by"),
    "retention_h": N_("How long images are kept"),
    "retention": N_("Images of safety alerts are kept for %(days)s days and then deleted automatically."),
    "faces_h": N_("No face recognition"),
    "faces": N_("The system does not identify people. It does not use face recognition."),
    "contact_h": N_("Questions and data access requests"),
    "rights": N_(
        "You may ask for access to, or correction of, images of you under the Personal Data (Privacy) "
        "Ordinance (Cap. 486)."
    ),
}


@router.get("/privacy", name="web_privacy", response_class=HTMLResponse)
def privacy_page(request: Request, ctx: Ctx) -> HTMLResponse:
    """Explain what is recorded, why, for how long, and who may see it (also for signed-out visitors)."""
    page = Page(
        locale=request_locale(request), zone=ctx.settings.zone, retention_days=ctx.settings.retention_days
    )
    principal = optional_principal(request, ctx)
    return render(
        request,
        "privacy.html",
        page,
        {
            "signed_in": principal is not None,
            "operator": ctx.settings.operator_name,
            "contact": ctx.settings.privacy_contact,
        },
    )


@router.get("/notice", name="web_notice", response_class=HTMLResponse)
def notice_page(request: Request, setup: Setup) -> HTMLResponse:
    """Show the printable bilingual CCTV notice with the operator and contact of the settings."""
    page, settings = setup.page, setup.ctx.settings
    days = page.retention_days
    english = i18n.translations("en")
    chinese = i18n.translations("zh_Hant")
    text = {
        key: (
            english.gettext(message) % {"days": days} if "%(days)s" in message else english.gettext(message),
            chinese.gettext(message) % {"days": days} if "%(days)s" in message else chinese.gettext(message),
        )
        for key, message in NOTICE.items()
    }
    return render(
        request,
        "notice.html",
        page,
        {"text": text, "operator": settings.operator_name, "contact": settings.privacy_contact},
    )
