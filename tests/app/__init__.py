"""Page tests: app.py, pages/ and the shared blocks of pages/ui/ run in `streamlit.testing.v1.AppTest`."""
