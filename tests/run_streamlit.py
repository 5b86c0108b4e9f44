"""`streamlit run streamlit_app.py` for the browser test: the real models where they are on the
branch; while one of them is missing, the app runs on the test doubles (tests/doubles.py)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if __name__ == "__main__":
    from tests import doubles

    if doubles.install_missing():
        import assistant.findings as findings

        findings.segment_recording = doubles.segment_recording
        findings.Analyzer.load = classmethod(lambda cls, config=None: findings.Analyzer(
            doubles.MurmurModel(), doubles.Retriever()))
    from streamlit.web.cli import main

    sys.argv = ["streamlit", "run", str(ROOT / "streamlit_app.py"), *sys.argv[1:]]
    main()
