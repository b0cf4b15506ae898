"""Task functions of longva_videomme*; the logic lives in longva_plugins.lmms_eval_plugin.task_utils.videomme."""

from longva_plugins.lmms_eval_plugin.task_utils.videomme import (  # noqa: F401
    videomme_aggregate,
    videomme_missing_videos,
    videomme_doc_to_text,
    videomme_doc_to_text_paper,
    videomme_doc_to_text_subtitle,
    videomme_doc_to_visual,
    videomme_process_docs,
    videomme_process_docs_long,
    videomme_process_docs_medium,
    videomme_process_docs_short,
    videomme_process_docs_paper,
    videomme_process_docs_w_subtitle,
    videomme_process_results,
    videomme_process_results_paper,
)
