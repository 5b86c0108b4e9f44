"""MurmurScope in the browser: upload recordings (a site per file), see the heart cycles, the
spectrogram and the murmur call, then ask the consultation agent about them.

Run: `streamlit run streamlit_app.py`. The chat model comes from MURMURSCOPE_CHAT_BASE_URL /
MURMURSCOPE_CHAT_MODEL; the audio-LLM tool from MURMURSCOPE_AUDIO_LLM_URL / MURMURSCOPE_AUDIO_LLM_MODEL.
Without a chat model the chat answers the question's topic from the findings, with short guidance
excerpts (the full passages in an expander), and says so.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import matplotlib.pyplot as plt
import streamlit as st

from assistant.consult.markdown import inert_markdown
from assistant.data.audio import SITES, parse_name
from assistant.data.labels import MURMUR_CLASSES
from assistant.data.uploads import MAX_RECORDINGS, MAX_UPLOAD_MB
from assistant.errors import MurmurScopeError

AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]
GUIDELINE_TYPES = ["pdf", "html", "htm", "docx", "md", "txt"]


@st.cache_resource(show_spinner="Loading the models…")
def load_consultation():
    from assistant.consult.consultation import Consultation

    return Consultation.from_env()


def report(error: Exception) -> None:
    if isinstance(error, MurmurScopeError):
        st.error(str(error))
    else:
        st.error(f"Something went wrong ({type(error).__name__}); please try again or check the server log.")


class TooManyUploadsError(MurmurScopeError):
    pass


class Conversation:
    """The session's conversation id. Streamlit drops a session's state when its tab has been gone for
    server.disconnectedSessionTTL seconds; this object goes with it, and the finalizer then forgets the
    conversation's recordings (Streamlit has no session-end callback)."""

    def __init__(self, consultation):
        self.id = consultation.new_conversation()
        self._release = weakref.finalize(self, consultation.end, self.id)

    def end(self) -> None:
        self._release()


def check_uploads(files) -> None:
    """Counts and sizes, before anything is decoded (the API's limits)."""
    if len(files) > MAX_RECORDINGS:
        raise TooManyUploadsError(f"{len(files)} files: at most {MAX_RECORDINGS} recordings per analysis")
    total = sum(f.size for f in files)
    if total > MAX_UPLOAD_MB * 2**20:
        raise TooManyUploadsError(f"{total / 2**20:.1f} MB in all: at most {MAX_UPLOAD_MB:g} MB per analysis")


def analyse(files, sites: list[str | None]) -> None:
    from assistant.data.uploads import anonymous, decode_upload

    check_uploads(files)
    consultation = load_consultation()
    recordings = []
    for f, site in zip(files, sites):
        try:
            recordings.append(decode_upload(f.getvalue(), Path(f.name).suffix, site))
        except MurmurScopeError as e:
            raise type(e)(f"{f.name}: {anonymous(str(e))}") from None
    if "conversation" in st.session_state:
        st.session_state.conversation.end()
    conversation = Conversation(consultation)
    ids = [consultation.attach(conversation.id, r) for r in recordings]
    findings = consultation.analyze(recordings, ids=ids)
    st.session_state.update(conversation=conversation, recordings=recordings, findings=findings,
                            names=[f.name for f in files], messages=[])


def show_findings() -> None:
    from assistant.viz.analysis import draw_probabilities, recording_figure

    f = st.session_state.findings
    st.subheader(f"Murmur: {f.murmur}")
    cols = st.columns(len(MURMUR_CLASSES) + 1)
    for col, c in zip(cols, MURMUR_CLASSES):
        col.metric(f"P({c})", f"{100 * f.probabilities.get(c, 0.0):.0f}%")
    cols[-1].metric("signal quality", f"{f.signal_quality:.2f}")
    for w in f.warnings:
        st.warning(w)
    if f.unfamiliar:
        st.caption(f"The model alone called it {f.ungated_murmur}.")
    if f.familiarity:
        st.caption(f"Unfamiliarity: {f.familiarity.unfamiliar_recordings} of {f.familiarity.recordings} recordings "
                   f"beyond {f.familiarity.threshold:.1f} ({f.familiarity.method}).")
    if f.abnormal:
        st.markdown(f"**Normal/abnormal: {f.abnormal.label}** · P(abnormal) {100 * f.abnormal.probability:.0f}%")
        st.caption(f.abnormal.caveat)
    left, right = st.columns([2, 3])
    fig, ax = plt.subplots(figsize=(5, 1.8), constrained_layout=True)
    draw_probabilities(ax, f.probabilities, "murmur probabilities")
    left.pyplot(fig)
    plt.close(fig)
    rows = [{"feature": name.replace("_", " "), "value": ft.label,
             "probability": round(ft.probabilities.get(ft.label, 0.0), 2) if ft.label else None,
             "confidence": "low" if ft.low_confidence else "ok", "read by": ft.source}
            for name, ft in f.features.items() if ft.label]
    if f.murmur == "Present" and rows:
        right.markdown("**Murmur features**")
        right.dataframe(rows, hide_index=True)
    else:
        right.markdown("No murmur features: the murmur call is not *Present*.")
    if f.audio_llm is not None:
        from assistant.consult.report import audio_llm_markdown

        st.markdown(audio_llm_markdown(f))
    tabs = st.tabs([f"{r.id} · {r.site or '?'} · {name}" for r, name in zip(f.recordings, st.session_state.names)])
    for tab, rec, rf in zip(tabs, st.session_state.recordings, f.recordings):
        with tab:
            s = rf.segmentation
            st.caption(f"heart rate {f'{s.heart_rate:.0f} bpm' if s.heart_rate else 'not found'} · "
                       f"{s.n_cycles} cycles · quality {s.quality:.2f}"
                       + ("" if s.reliable else f" · unreliable: {s.message}")
                       + ("" if rf.familiarity is None else f" · unfamiliarity {rf.familiarity:.1f}")
                       + ("" if rf.abnormal_probability is None else
                          f" · P(abnormal) {100 * rf.abnormal_probability:.0f}%"))
            fig = recording_figure(rec, s)
            st.pyplot(fig)
            plt.close(fig)
    if f.guidance:
        with st.expander("Guidance", expanded=False):
            for k, p in enumerate(f.guidance, 1):
                st.markdown(f"**[{k}] {p.citation()}**" + (f" — {p.url}" if p.url else ""))
                st.write(p.text)
    st.caption(f.disclaimer)


def show_downloads() -> None:
    """PDF and FHIR downloads of the analysis on screen; made when a button is clicked, not on every rerun."""
    from assistant.report.document import check_patient_id
    from assistant.report.outputs import make_reports

    f, recordings = st.session_state.findings, st.session_state.recordings
    st.markdown("**Reports to file**")
    entered = st.text_input("Patient id (optional)", key="patient_id",
                            help="Written into the PDF and FHIR reports. Without it they say 'anonymous'; "
                                 "file names are never written into them.")
    try:
        patient_id = check_patient_id(entered)
    except MurmurScopeError as e:
        st.error(str(e))
        return
    analyzer, made = load_consultation().analyzer, {}

    def reports():
        # One analysis, both formats: the PDF is made once and also goes into the FHIR bundle.
        if "reports" not in made:
            made["reports"] = make_reports(analyzer, f, recordings, patient_id)
        return made["reports"]

    name = f"murmurscope_{patient_id or 'anonymous'}"
    left, right = st.columns(2)
    left.download_button("Download PDF report", lambda: reports().pdf, file_name=f"{name}.pdf",
                         mime="application/pdf", on_click="ignore", key="download-pdf")
    right.download_button("Download FHIR bundle", lambda: reports().fhir, file_name=f"{name}.fhir.json",
                          mime="application/fhir+json", on_click="ignore", key="download-fhir")


def add_guidelines() -> None:
    """The user's own guidelines, searched beside the shipped corpus by this app from now on (in memory:
    `murmurscope index add` keeps them across restarts)."""
    import tempfile

    from knowledge.ingest import IngestError, load_document

    files = st.sidebar.file_uploader("Your guidelines (PDF, HTML, Word, Markdown, text)", type=GUIDELINE_TYPES,
                                     accept_multiple_files=True, key="guidelines")
    added = st.session_state.setdefault("guidelines_added", {})
    retriever = load_consultation().analyzer.retriever
    for f in files or []:
        if f.file_id in added or retriever is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(f.name).name
            path.write_bytes(f.getvalue())
            try:
                chunks = load_document(path)
            except IngestError as e:
                st.sidebar.error(str(e))
                added[f.file_id] = 0
                continue
        retriever.add(chunks)
        added[f.file_id] = len(chunks)
        st.sidebar.success(f"{f.name}: {len(chunks)} passages added to the guidance")


def show_passages(passages) -> None:
    """The full guidance behind a reply's excerpts, folded away: the reply itself stays short."""
    if passages:
        with st.expander(f"Full guidance passages ({len(passages)})", expanded=False):
            for k, p in enumerate(passages, 1):
                st.markdown(f"**[{k}] {p.citation()}**" + (f" — {p.url}" if p.url else ""))
                st.write(p.text)


def show_chat() -> None:
    # Model-written text is rendered inert: no images fetched, no links to click.
    for m in st.session_state.messages:
        with st.chat_message(m["role"]):
            st.markdown(inert_markdown(m["content"]))
            show_passages(m.get("guidance"))
    question = st.chat_input("Ask about these recordings")
    if not question:
        return
    st.session_state.messages.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(inert_markdown(question))
    with st.chat_message("assistant"):
        try:
            reply = load_consultation().ask(st.session_state.conversation.id, question)
        except Exception as e:  # noqa: BLE001 - shown as a message, never a traceback
            report(e)
            return
        st.markdown(inert_markdown(reply.text))
        show_passages(reply.guidance)
    st.session_state.messages.append({"role": "assistant", "content": reply.text, "guidance": reply.guidance})


def main() -> None:
    st.set_page_config(page_title="MurmurScope", page_icon="🫀", layout="wide")
    st.title("MurmurScope")
    st.caption("Heart-murmur consultation from phonocardiograms. Decision support, not a diagnosis.")
    add_guidelines()
    files = st.file_uploader(f"Recordings, one per auscultation site (at most {MAX_RECORDINGS})", type=AUDIO_TYPES,
                             accept_multiple_files=True, max_upload_size=int(MAX_UPLOAD_MB))
    sites: list[str | None] = []
    for k, f in enumerate(files or []):
        guess = parse_name(Path(f.name).stem)[1]
        options = ["unknown", *SITES]
        choice = st.selectbox(f"Site of {f.name}", options, index=options.index(guess) if guess else 0,
                              key=f"site-{k}-{f.name}")
        sites.append(None if choice == "unknown" else choice)
    if st.button("Analyze", type="primary", disabled=not files):
        with st.spinner("Analysing…"):
            try:
                analyse(files, sites)
            except Exception as e:  # noqa: BLE001 - shown as a message, never a traceback
                report(e)
    if "findings" in st.session_state:
        show_findings()
        show_downloads()
        show_chat()


main()
