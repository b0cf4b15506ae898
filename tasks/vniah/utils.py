"""Task functions of vniah / vniah_gen; the logic lives in longva_plugins.lmms_eval_plugin.task_utils.vniah."""

from longva_plugins.lmms_eval_plugin.task_utils.vniah import (  # noqa: F401
    vniah_aggregate,
    vniah_doc_to_target,
    vniah_doc_to_text,
    vniah_doc_to_visual,
    vniah_gen_aggregate,
    vniah_gen_doc_to_visual,
    vniah_gen_process_results,
    vniah_process_docs,
    vniah_process_results,
)
