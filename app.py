"""LM Lab's entry point: ``streamlit run app.py``.

The app's frame (:func:`dashboard.nav.frame`: navigation over the eight pages in ``pages/``
and the shared sidebar), then the page asked for. Importing this file, like the Home, Data
and Math pages, loads no TensorFlow.
"""

from dashboard import nav

page = nav.frame()
with nav.through_app():
    page.run()
