"""Cardiology guidance corpus, its FAISS index and the retriever."""
