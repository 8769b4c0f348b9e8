"""Tour: the lab in six steps on the visitor's own corpus, with Back and Next.

Each step is drawn by :mod:`dashboard.tour` from the pages' own pieces. The step is kept in
the session and the address: leave for any page and come back to the same step.
"""

import streamlit as st

from dashboard import links, nav, tour
from lmcore import LMError

nav.enter()

LINKED = [links.Field("step", tour.STEP_KEY, links.integer(1, len(tour.TITLES)))]
links.restore("tour", LINKED)
links.notice("tour")
step = min(max(int(st.session_state.get(tour.STEP_KEY, 1)), 1), len(tour.TITLES))
st.session_state[tour.STEP_KEY] = step


def go(to: int) -> None:
    st.session_state[tour.STEP_KEY] = to


st.title("Tour")
st.progress(step / len(tour.TITLES), text=f"Step {step} of {len(tour.TITLES)}: {tour.TITLES[step - 1]}")
st.header(f"{step}. {tour.TITLES[step - 1]}")
try:
    tour.STEPS[step - 1](tour.Corpus())
except LMError as err:  # e.g. a web address chosen on the Data page that no longer answers
    st.error(f"The corpus chosen on the Data page cannot be loaded: {err}")
cols = st.columns([1, 1, 4])
cols[0].button("Back", disabled=step == 1, on_click=go, args=(step - 1,), icon=":material/arrow_back:")
cols[1].button(
    "Next",
    disabled=step == len(tour.TITLES),
    on_click=go,
    args=(step + 1,),
    type="primary",
    icon=":material/arrow_forward:",
)
if step == len(tour.TITLES):
    cols[2].page_link("pages/train.py", label="The tour is over: train a model of your own")
links.keep("tour", LINKED)
