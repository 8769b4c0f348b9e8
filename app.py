"""LM Lab's entry point: ``streamlit run app.py``.

Navigation over the pages in ``pages/`` and the shared sidebar. Importing this file, like the
Home, Data and Math pages, loads no TensorFlow.
"""

import streamlit as st

from pages import common

st.set_page_config(page_title="LM Lab", page_icon=":material/science:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/description:"),
    st.Page("pages/math.py", title="Math", icon=":material/functions:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/generate.py", title="Generate", icon=":material/edit_note:"),
    st.Page("pages/finetune.py", title="Fine-tune", icon=":material/tune:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:"),
]

page = st.navigation(PAGES)
common.sidebar()
page.run()
