"""The board's words in English and Chinese: one dictionary per language, the same keys in both.

    strings = ui_strings(choose_language(cookie="zh", accept_language="en-US,en;q=0.9"))   # → the zh set

The page is rendered with one language's strings and its script gets the same dictionary; the switch in
the header sets a cookie. Without one, the browser's Accept-Language decides (Chinese when it prefers zh).
"""

from __future__ import annotations

LANGUAGES = ("en", "zh")

EN = {
    "title": "r1tune board", "lang_switch": "中文", "tab_data": "Data", "tab_train": "Train", "tab_runs": "Runs",
    "tab_evaluate": "Evaluate", "tab_chat": "Chat", "tab_export": "Export",
    "login_title": "Sign in", "login_key": "API key", "login_button": "Sign in",
    "login_wrong": "Wrong key.",
    # data
    "data_file": "Data file", "data_upload": "Upload a file", "data_upload_hint":
        "JSONL, JSON, CSV, TSV or Parquet (or a prepare config .yaml); stored in the runs folder's uploads/.",
    "data_preview": "Preview", "data_check": "Quality check", "data_check_labels": "Labels (optional, comma-separated)",
    "data_prepare": "Run a prepare config", "data_prepare_config": "Prepare config (.yaml)",
    "data_prepare_run": "Run pipeline", "data_records": "records shown", "data_problems": "unreadable records",
    "data_report": "Report",
    # train
    "train_kind": "Kind", "train_name": "Run name", "train_model": "Base model", "train_data": "Training data",
    "train_validation": "Validation data (optional)", "train_method": "Method", "train_max_steps": "Max steps",
    "train_epochs": "Epochs", "train_batch_size": "Batch size", "train_grad_accum": "Gradient accumulation",
    "train_lr": "Learning rate", "train_max_length": "Max length (tokens)", "train_lora_r": "LoRA rank",
    "train_eval_every": "Evaluate every", "train_save_every": "Checkpoint every", "train_reasoning": "Reasoning traces",
    "train_rewards": "Rewards", "train_num_generations": "Completions per prompt",
    "train_max_completion_length": "Max completion length", "train_adapter": "Start from SFT run (optional)",
    "train_continue_from": "Continue from run (optional)",
    "train_extra": "More settings (one key=value per line, any config key)",
    "train_advise": "Ask the advisor", "train_estimate": "Estimate memory of this setting",
    "train_apply": "Use this", "train_preview": "Show config", "train_launch": "Launch",
    "advisor_title": "Advisor", "advisor_running": "The advisor is reading the data and the model…",
    "advisor_memory": "memory", "advisor_fits": "fits", "advisor_no_fit": "does not fit",
    "advisor_available": "available",
    # runs
    "runs_name": "Run", "runs_kind": "Kind", "runs_status": "Status", "runs_step": "Step", "runs_loss": "Loss",
    "runs_started": "Started", "runs_open": "Open", "runs_stop": "Stop", "runs_resume": "Resume",
    "runs_none": "No runs yet: launch one from the Train tab.", "runs_refresh": "Refresh",
    "chart_loss": "Loss (train, eval)", "chart_lr": "Learning rate", "chart_reward": "Reward", "chart_grad_norm":
        "Gradient norm", "chart_no_points": "No points yet.", "run_log": "Log", "run_config": "Config",
    "run_reports": "Reports", "run_command": "Command", "run_reason": "Why it failed",
    "status_running": "running", "status_stopping": "stopping", "status_finished": "finished",
    "status_failed": "failed", "status_stopped": "stopped", "status_incomplete": "incomplete",
    # evaluate
    "eval_run": "Run to evaluate", "eval_data": "Test data", "eval_compare_base": "Compare with the base model",
    "eval_max_samples": "Max samples", "eval_max_new_tokens": "Max new tokens", "eval_launch": "Evaluate",
    "eval_jobs": "Evaluations", "eval_open_report": "Open report",
    # chat
    "chat_run": "Model", "chat_temperature": "Temperature", "chat_top_p": "Top-p", "chat_max_tokens": "Max tokens",
    "chat_system": "System prompt (optional)", "chat_input": "Message", "chat_send": "Send", "chat_reset": "New chat",
    "chat_stop": "Stop", "chat_reasoning": "Reasoning", "chat_loading": "Loading the model…",
    "chat_answer_missing": "(no answer: the reasoning did not end)", "chat_cut": "(cut off at max tokens)",
    "chat_chars": "characters",
    # export
    "export_run": "Run", "export_format": "Format", "export_merge": "Merge the adapter (fp32, standalone model)",
    "export_int8": "INT8 (weight-only)", "export_gguf": "GGUF (llama.cpp, Ollama)", "export_dtype": "Saved dtype",
    "export_data": "Test data to measure on (INT8, optional)", "export_gguf_type": "GGUF type",
    "export_launch": "Export", "export_jobs": "Exports",
    # shared
    "name_optional": "Name (optional)", "launched": "Launched", "error": "Error", "working": "Working…",
    "csrf_reload": "The board restarted or the session expired: reload the page.", "none": "—",
}

ZH = {
    "title": "r1tune 看板", "lang_switch": "English", "tab_data": "数据", "tab_train": "训练", "tab_runs": "运行",
    "tab_evaluate": "评估", "tab_chat": "对话", "tab_export": "导出",
    "login_title": "登录", "login_key": "API 密钥", "login_button": "登录", "login_wrong": "密钥错误。",
    "data_file": "数据文件", "data_upload": "上传文件", "data_upload_hint":
        "JSONL、JSON、CSV、TSV 或 Parquet（或 prepare 配置 .yaml）；保存在运行目录的 uploads/ 中。",
    "data_preview": "预览", "data_check": "质量检查", "data_check_labels": "标签（可选，逗号分隔）",
    "data_prepare": "运行 prepare 配置", "data_prepare_config": "prepare 配置（.yaml）",
    "data_prepare_run": "运行流水线", "data_records": "条记录", "data_problems": "条无法读取",
    "data_report": "报告",
    "train_kind": "类型", "train_name": "运行名称", "train_model": "基础模型", "train_data": "训练数据",
    "train_validation": "验证数据（可选）", "train_method": "方法", "train_max_steps": "最大步数",
    "train_epochs": "轮数", "train_batch_size": "批大小", "train_grad_accum": "梯度累积",
    "train_lr": "学习率", "train_max_length": "最大长度（token）", "train_lora_r": "LoRA 秩",
    "train_eval_every": "每隔多少步评估", "train_save_every": "每隔多少步保存", "train_reasoning": "推理过程",
    "train_rewards": "奖励", "train_num_generations": "每个提示的生成数",
    "train_max_completion_length": "最大生成长度", "train_adapter": "从 SFT 运行开始（可选）",
    "train_continue_from": "在某次运行上继续（可选）",
    "train_extra": "更多设置（每行一个 key=value，可设任何配置项）",
    "train_advise": "询问顾问", "train_estimate": "估算此设置的显存", "train_apply": "采用",
    "train_preview": "查看配置", "train_launch": "启动",
    "advisor_title": "顾问", "advisor_running": "顾问正在读取数据和模型…", "advisor_memory": "显存",
    "advisor_fits": "放得下", "advisor_no_fit": "放不下", "advisor_available": "可用",
    "runs_name": "运行", "runs_kind": "类型", "runs_status": "状态", "runs_step": "步", "runs_loss": "损失",
    "runs_started": "开始于", "runs_open": "打开", "runs_stop": "停止", "runs_resume": "恢复",
    "runs_none": "还没有运行：在「训练」页启动一个。", "runs_refresh": "刷新",
    "chart_loss": "损失（训练、验证）", "chart_lr": "学习率", "chart_reward": "奖励", "chart_grad_norm": "梯度范数",
    "chart_no_points": "还没有数据点。", "run_log": "日志", "run_config": "配置", "run_reports": "报告",
    "run_command": "命令", "run_reason": "失败原因",
    "status_running": "运行中", "status_stopping": "停止中", "status_finished": "已完成", "status_failed": "失败",
    "status_stopped": "已停止", "status_incomplete": "未完成",
    "eval_run": "要评估的运行", "eval_data": "测试数据", "eval_compare_base": "与基础模型对比",
    "eval_max_samples": "最多样本数", "eval_max_new_tokens": "最多生成 token", "eval_launch": "评估",
    "eval_jobs": "评估任务", "eval_open_report": "打开报告",
    "chat_run": "模型", "chat_temperature": "温度", "chat_top_p": "Top-p", "chat_max_tokens": "最多 token",
    "chat_system": "系统提示（可选）", "chat_input": "消息", "chat_send": "发送", "chat_reset": "新对话",
    "chat_stop": "停止", "chat_reasoning": "推理过程", "chat_loading": "正在加载模型…",
    "chat_answer_missing": "（没有回答：推理没有结束）", "chat_cut": "（达到最大 token 数，已截断）",
    "chat_chars": "字",
    "export_run": "运行", "export_format": "格式", "export_merge": "合并适配器（fp32，独立模型）",
    "export_int8": "INT8（仅权重）", "export_gguf": "GGUF（llama.cpp、Ollama）", "export_dtype": "保存精度",
    "export_data": "用于测量的测试数据（INT8，可选）", "export_gguf_type": "GGUF 类型",
    "export_launch": "导出", "export_jobs": "导出任务",
    "name_optional": "名称（可选）", "launched": "已启动", "error": "错误", "working": "处理中…",
    "csrf_reload": "看板已重启或会话已过期：请刷新页面。", "none": "—",
}

STRINGS = {"en": EN, "zh": ZH}


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language when valid, else the first of en / zh the browser prefers, else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.split("-")[0] in LANGUAGES:
            return tag.split("-")[0]
    return "en"


def ui_strings(language: str) -> dict[str, str]:
    return STRINGS.get(language, EN)
