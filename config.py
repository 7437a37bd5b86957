"""The operator's settings. Edit here, or override with `--config FILE` or `MONITOR_<NAME>` variables.

Every name is validated at start-up (foundation/settings.py); a wrong value stops the agent with exit
status 2 and a message naming the setting. Secrets belong in the environment (systemd
EnvironmentFile), not in this file.
"""

# --- the cycle ---------------------------------------------------------------------------------
TEST_MODE = False                      # True: run one cycle and exit (same as --once)
MONITOR_INTERVAL_SECONDS = 300         # seconds between the starts of two cycles (>= 10)
DATA_DIR = "./data"                    # folder of the SQLite store (monitor.db); created if missing
COLLECTOR_TIMEOUT_SECONDS = 0.0       # cap on every collector's time in a cycle; 0: each one's own bound (syslog 90 s, processes 15 s ...)
COLLECTORS = ["syslog", "auth_log", "sensors", "ping", "nmap", "processes", "containers", "llm_runtimes"]  # enabled collectors, by name
HISTORY_RETENTION_DAYS = 30            # samples and finding history older than this are trimmed
STORE_BACKUP_INTERVAL_HOURS = 24       # hours between two verified online backups of the store (DATA_DIR/backups)
STORE_BACKUP_GENERATIONS = 3          # backups kept (newest first); 0 makes none
HOST_NAME = ""                         # this host's name in alerts; "" uses the system hostname
LOG_LEVEL = "INFO"                     # DEBUG, INFO, WARNING or ERROR (logs go to stderr)

# --- logs: syslog and auth.log -------------------------------------------------------------------
SYSLOG_PATH = "/var/log/syslog"        # syslog file; the journal is used when it is absent (auto)
AUTH_LOG_PATH = "/var/log/auth.log"    # auth log file; the journal is used when it is absent (auto)
SYSLOG_BACKEND = "auto"                # "auto", "file" or "journal"
AUTH_LOG_BACKEND = "auto"              # "auto", "file" or "journal"
LOG_START_AT = "end"                   # first run: "end" skips old lines, "start" reads files whole
LOG_MAX_LINE_BYTES = 8192              # longer lines are cut to this (their head kept) and counted in long_lines
LOG_MAX_BYTES_PER_CYCLE = 268435456    # read at most this much per file per cycle; the rest next cycle
JOURNAL_DIRECTORY = ""                  # "" reads the system journal; else a folder of journal files
FOLLOW_LOGS = True                     # new log lines start an event cycle of the log collectors at once
SSH_BRUTEFORCE_MAX_RETRY = 5           # failures from one address within the window make ssh_bruteforce
SSH_BRUTEFORCE_FINDTIME_SECONDS = 600  # the window (fail2ban's defaults: 5 in 10 minutes)

# --- sensors -------------------------------------------------------------------------------------
TEMPERATURE_HIGH_CELSIUS = 85.0        # high mark for sensors that report none of their own
TEMPERATURE_CRITICAL_CELSIUS = 100.0   # critical mark for sensors that report none of their own

# --- ping ----------------------------------------------------------------------------------------
PING_TARGETS = ["127.0.0.1"]           # hosts to ping each cycle, in parallel
PING_COUNT = 3                         # echo requests per target and cycle
PING_TIMEOUT_SECONDS = 5.0             # the whole ping collector finishes within this
PING_LOSS_THRESHOLD_PERCENT = 20.0     # loss at or above this is ping_loss

# --- nmap ----------------------------------------------------------------------------------------
NMAP_TARGETS = ["127.0.0.1"]           # addresses or networks to scan (only ones you own)
NMAP_SCAN_OPTIONS = "-sT -T4 --top-ports 1000"  # nmap options; -sS and -O need CAP_NET_RAW
NMAP_INTERVAL_SECONDS = 3600           # scans are slow: at most one per this many seconds
NMAP_TIMEOUT_SECONDS = 120             # a scan longer than this is abandoned

# --- processes and containers --------------------------------------------------------------------
PROCESSES_TO_MONITOR = []              # process names (or command-line substrings) that must run
DOCKER_CONTAINERS_TO_MONITOR = []      # container names that must be running and healthy
DOCKER_HOST = ""                       # Docker API address; "" uses DOCKER_HOST or the default socket

# --- local LLM runtimes --------------------------------------------------------------------------
LLM_CONNECTION_ALLOWLIST = ["registry.ollama.ai", "ollama.com"]  # hosts/networks LLMs may reach
LLM_RDNS_TIMEOUT_SECONDS = 1.0         # each DNS round for an LLM's external peers (reverse, then forward confirmation) waits at most this

# --- what leaves for the cloud (the llm_traffic collector, opt-in: add it to COLLECTORS) ----------
LLM_TRAFFIC_CAPTURE_BYTES = 16384      # plaintext read per TLS call and direction, in memory only, for the provider, model and secret checks
LLM_TRAFFIC_SAMPLE = False             # keep a 200-character redacted sample of each LLM request in the cycle report (debugging only)

# --- the Ollama judge ----------------------------------------------------------------------------
OLLAMA_HOST = "http://127.0.0.1:11434"  # Ollama's address
OLLAMA_MODEL = "llama3.1:8b"           # the model that judges severity
OLLAMA_NUM_CTX = 8192                  # context window asked of Ollama (prompts are cut to fit)
OLLAMA_TIMEOUT_SECONDS = 60.0          # one verdict request may take this long
OLLAMA_WARMUP_TIMEOUT_SECONDS = 300.0  # loading the model at start may take this long
OLLAMA_KEEP_ALIVE = "30m"              # how long Ollama keeps the model loaded after a verdict
ALWAYS_ASK_LLM = False                 # True: ask every cycle, even without findings
LLM_CACHE_MINUTES = 30                 # an identical question within this is answered from cache
PROMPT_TOKEN_BUDGET = 3000             # the prompt stays within this many (estimated) tokens
KNOWN_ISSUES_PATH = "known_issues.json"  # the operator's known issues (mute, cap, context)
CONSTRAINTS_PATH = "CONSTRAINTS.md"    # the operator's standing guidance to the LLM

# --- alerts --------------------------------------------------------------------------------------
DISCORD_WEBHOOK_URL = ""               # Discord webhook (secret: set MONITOR_DISCORD_WEBHOOK_URL)
APPRISE_URLS = []                      # Apprise URLs (ntfy, Gotify, Telegram, email...): "URL" or {"url": "URL", "min_severity": "high", "purposes": ["alert"]}; secrets: set MONITOR_APPRISE_URLS to a JSON list (docs/alerts.md)
HOME_ASSISTANT_URL = ""                # e.g. https://ha.example.net or http://127.0.0.1:8123 (same machine); "" disables speech
HOME_ASSISTANT_ALLOW_PLAIN_HTTP = False  # True accepts plain http to another host (the token then crosses the network in clear)
HOME_ASSISTANT_TOKEN = ""              # long-lived access token (secret: set it in the environment)
GOOGLE_HOME_SPEAKER_ID = ""            # media_player entity of the speaker, e.g. media_player.kitchen
HOME_ASSISTANT_TTS_ENTITY = "tts.google_translate_en_com"  # TTS entity for tts.speak
HOME_ASSISTANT_TTS_SERVICE = "speak"   # "speak" (tts.speak) or "google_translate_say" (legacy)
TTS_QUIET_HOURS = ""                   # e.g. "22:00-07:00": no speech then; "" never quiet
TTS_QUIET_HOURS_FLOOR_OVERRIDE = True  # speak findings with a high floor even in quiet hours
ALERT_COOLDOWN_MINUTES = 60            # repeat an ongoing alert after this long
ALERT_RETRY_MAX_SECONDS = 900          # retry backoff starts at 5 s, doubles, and stops growing here
DAILY_RECAP_TIME = "08:00"             # local time of the daily recap (HH:MM)
RECAP_GRACE_HOURS = 6                  # a recap missed while down is sent on start within this

# --- home assistant entities over mqtt (docs/alerts.md) -----------------------------------------
MQTT_URL = ""                          # mqtt://USER:PASSWORD@HOST:1883 or mqtts://... (TLS); "" disables it (secret: set MONITOR_MQTT_URL)
MQTT_ALLOW_PLAIN_PASSWORD = False      # True accepts plain mqtt:// with a password to another host (it then crosses the network in clear)
MQTT_DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's discovery prefix (its MQTT integration's default)
MQTT_BASE_TOPIC = ""                   # where states are published; "" means homelab-monitor/HOST
MQTT_CLIENT_ID = ""                    # the agent's MQTT client id; "" means homelab-monitor-HOST
MQTT_TLS_CA_FILE = ""                  # with mqtts://: the CA file of the broker's certificate; "" trusts the system's CAs

# --- a fleet: alertmanager (docs/fleet.md) -------------------------------------------------------
ALERTMANAGER_URL = ""                  # e.g. http://alertmanager.lan:9093: open findings are posted there each cycle, closed ones resolved; "" disables it (may hold user:password@: set MONITOR_ALERTMANAGER_URL)
ALERTMANAGER_MIN_SEVERITY = "high"     # findings at or above this ("high", "medium" or "low") are posted; Alertmanager routes them by their severity label
ALERTMANAGER_DASHBOARD_URL = ""        # the dashboard as the fleet reaches it, e.g. https://nas.lan:8765: each alert links to its finding there; "" links nowhere

# --- operations ----------------------------------------------------------------------------------
METRICS_PORT = 0                       # Prometheus /metrics port; 0 disables it
METRICS_BIND = "127.0.0.1"             # address /metrics listens on

# --- the dashboard (python monitor_agent.py web) -------------------------------------------------
WEB_BIND = "127.0.0.1"                 # address the dashboard listens on; another than loopback needs a password (web-password)
WEB_PORT = 8765                        # the dashboard's port
WEB_TRUSTED_PROXIES = []               # addresses of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed; [] believes none
