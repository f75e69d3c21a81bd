"""Researcher access to the study pages (designer, results): a password from `$SPADE_STUDY_PASSWORD` or the
Streamlit secret `study_password`, compared in constant time (`hmac.compare_digest`). Without a configured
password the researcher pages stay locked and say how to set one. Refused attempts are logged on the
`spade_engine.study.access` logger (never the attempted password).
"""

from __future__ import annotations

import hmac
import logging
import os

import streamlit as st

from pages.ui import keys

PASSWORD_ENV = "SPADE_STUDY_PASSWORD"
PASSWORD_SECRET = "study_password"
access_log = logging.getLogger("spade_engine.study.access")


def configured_password() -> str | None:
    """The researcher password: `$SPADE_STUDY_PASSWORD`, else `study_password` in `.streamlit/secrets.toml`."""
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    try:
        return str(st.secrets[PASSWORD_SECRET]) or None
    except Exception:  # noqa: BLE001 (no secrets file, or no such key: Streamlit raises several types)
        return None


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of two passwords (time does not depend on where they differ)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_researcher(page: str) -> None:
    """Stop the page unless this browser session has given the researcher password.

    Args:
        page: the page's name, for the log line of a refused attempt.
    """
    expected = configured_password()
    if expected is None:
        st.info(f"The {page} page is locked: no researcher password is configured. Start the app with the "
                f"environment variable `{PASSWORD_ENV}` set, or put `{PASSWORD_SECRET} = \"…\"` in "
                "`.streamlit/secrets.toml`.")  # fmt: skip
        st.stop()
    if st.session_state.get(keys.STUDY_ACCESS_RESEARCHER):
        return
    with st.form(keys.STUDY_ACCESS_FORM):
        given = st.text_input("Researcher password", type="password", key=keys.STUDY_ACCESS_PASSWORD)
        submitted = st.form_submit_button("Unlock", type="primary")
    if submitted and password_matches(given, expected):
        st.session_state[keys.STUDY_ACCESS_RESEARCHER] = True
        st.rerun()
    if submitted:
        access_log.warning("refused researcher access to the %s page: wrong password", page)
        st.error("That password is not right. Ask the person who runs this server for the researcher password.")
    else:
        st.info(f"The {page} page is for the researchers who run the study: enter the researcher password.")
    st.stop()
