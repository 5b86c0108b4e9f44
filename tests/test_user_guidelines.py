"""The user's own guidelines: PDF, HTML, Word, Markdown and text in a user index that the retriever
searches beside the shipped corpus; bad files are one line each and do not stop the batch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from knowledge.ingest import IngestError, load_document

RULE = "Riverside clinic rule: refer every child whose murmur is louder than grade II to the Riverside team."


def write_pdf(path: Path, pages: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for text in pages:
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.05, 0.9, text, fontsize=8)
            pdf.savefig(fig)
            plt.close(fig)
    return path


@pytest.fixture()
def documents(tmp_path) -> dict[str, Path]:
    import docx
    import matplotlib.pyplot as plt
    from pypdf import PdfWriter

    d = tmp_path / "docs"
    d.mkdir()
    pdf = write_pdf(d / "riverside.pdf", ["Introduction to the local pathway.", RULE])
    writer = PdfWriter(clone_from=pdf)
    writer.encrypt("secret")
    writer.write(d / "locked.pdf")
    fig = plt.figure()
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(np.arange(100).reshape(10, 10))
    ax.axis("off")
    fig.savefig(d / "scan.pdf")
    plt.close(fig)
    (d / "policy.html").write_text("<html><head><title>Echo policy</title><script>x=1</script></head><body>"
                                   "<h1>Echo policy</h1><p>Intro.</p><h2>Neonates</h2><p>Every neonate with a "
                                   "murmur gets a same-week echocardiogram at the Lakeside unit.</p></body></html>")
    document = docx.Document()
    document.add_heading("Follow-up", level=1)
    document.add_paragraph("Innocent murmurs are reviewed once at the Hillcrest practice after six months.")
    document.save(d / "followup.docx")
    (d / "notes.md").write_text("# Local notes\n\n## Phone numbers\n\nThe on-call cardiology fellow answers "
                                "at extension 4242.\n")
    (d / "plain.txt").write_text("First paragraph about stethoscopes.\n\nSecond paragraph on the Brookfield audit.\n")
    (d / "empty.txt").write_bytes(b"")
    (d / "slides.pptx").write_bytes(b"PK\x03\x04 not supported")
    return {p.name: p for p in d.iterdir()}


def test_each_format_cites_file_and_page_or_section(documents):
    pdf = load_document(documents["riverside.pdf"])
    assert [c.section for c in pdf] == ["page 1", "page 2"] and "Riverside clinic rule" in pdf[1].text
    assert pdf[1].source == "riverside.pdf, page 2"
    (html,) = [c for c in load_document(documents["policy.html"]) if "Lakeside" in c.text]
    assert html.title == "Echo policy" and html.source == "policy.html, section Neonates" and "x=1" not in html.text
    (word,) = load_document(documents["followup.docx"])
    assert word.source == "followup.docx, section Follow-up" and "Hillcrest" in word.text
    (md,) = load_document(documents["notes.md"])
    assert md.title == "Local notes" and md.source == "notes.md, section Phone numbers"
    assert [c.source for c in load_document(documents["plain.txt"])] == ["plain.txt, paragraph 1",
                                                                       "plain.txt, paragraph 2"]


@pytest.mark.parametrize("name,message", [("locked.pdf", "encrypted"), ("scan.pdf", "no text layer"),
                                          ("empty.txt", "empty"), ("slides.pptx", "unsupported type")])
def test_bad_files_are_one_line_errors(documents, name, message):
    with pytest.raises(IngestError, match=message) as e:
        load_document(documents[name])
    assert "\n" not in str(e.value) and str(e.value).startswith(name)


def test_long_pages_are_split_by_sentences(tmp_path):
    text = " ".join(f"Sentence number {i} says something about murmurs." for i in range(60))
    chunks = load_document(write_pdf(tmp_path / "long.pdf", [text]))
    assert len(chunks) > 1 and all(len(c.text.split()) <= 180 for c in chunks)
    assert {c.source for c in chunks} == {"long.pdf, page 1"}


def test_cli_add_then_every_surface_searches_both(documents, tmp_path, monkeypatch):
    user = tmp_path / "user-index"
    cli = [sys.executable, "-c", "from assistant.cli.main import main; main()"]
    result = subprocess.run([*cli, "index", "add", *map(str, documents.values()), "--user-index", str(user)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4 and {e.split(":")[1].strip() for e in errors} == {"locked.pdf", "scan.pdf", "empty.txt",
                                                                              "slides.pptx"}
    assert "added riverside.pdf: 2 passages" in result.stdout and "added followup.docx" in result.stdout

    from knowledge.retriever import Retriever

    monkeypatch.setenv("MURMURSCOPE_USER_INDEX", str(user))
    retriever = Retriever.load()
    assert len(retriever.index.passages) > 68
    hit = retriever.search("Which team do children with a murmur above grade II go to?", k=3)
    assert any(p.source == "riverside.pdf, page 2" for p in hit), [p.source for p in hit]
    # The shipped corpus is still there.
    assert retriever.search("venous hum", k=1)[0].id == "pediatric_murmurs#venous-hum"

    # Adding a file again replaces it rather than duplicating it.
    again = subprocess.run([*cli, "index", "add", str(documents["riverside.pdf"]), "--user-index", str(user)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"user index: {len(retriever.index.passages) - 68} passages" in again.stdout
