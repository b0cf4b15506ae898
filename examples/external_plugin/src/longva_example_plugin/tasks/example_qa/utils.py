"""Task functions of ``longva_example_qa`` (loaded by lmms-eval from this folder)."""


def example_doc_to_visual(doc):
    return []


def example_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def example_process_results(doc, results):
    prediction = results[0].strip().lower()
    return {"exact_match": float(prediction == doc["answer"].strip().lower())}
