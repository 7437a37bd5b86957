"""llm_traffic: what local processes send to LLM providers, seen in plaintext by eBPF uprobes on
OpenSSL (the collector is collector.py; importing this package runs nothing)."""
