"""Task functions of longva_mlvu_dev; the logic lives in longva_plugins.lmms_eval_plugin.task_utils.mlvu."""

from longva_plugins.lmms_eval_plugin.task_utils.mlvu import (  # noqa: F401
    mlvu_aggregate,
    mlvu_missing_videos,
    mlvu_doc_to_text,
    mlvu_doc_to_visual,
    mlvu_process_docs,
    mlvu_process_results,
)
