"""Task functions of the V-NIAH family; the logic lives in longva_plugins.lmms_eval_plugin.task_utils.vniah."""

from longva_plugins.lmms_eval_plugin.task_utils.vniah import (  # noqa: F401
    vniah_aggregate,
    vniah_d_aggregate,
    vniah_d_gen_aggregate,
    vniah_d_gen_process_results,
    vniah_d_process_docs,
    vniah_d_process_results,
    vniah_doc_to_target,
    vniah_doc_to_text,
    vniah_doc_to_visual,
    vniah_gen_aggregate,
    vniah_gen_doc_to_visual,
    vniah_gen_process_results,
    vniah_multi_aggregate,
    vniah_multi_gen_aggregate,
    vniah_multi_gen_process_results,
    vniah_multi_process_docs,
    vniah_multi_process_results,
    vniah_process_docs,
    vniah_process_results,
)
