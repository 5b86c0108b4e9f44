"""One consultation: the Analyzer and its Findings, the recording store, the agent's tools, the LangChain agent,
the Consultation and its Markdown report.

May import data, segment, murmur, llm and knowledge; never finetune or eval.
"""
