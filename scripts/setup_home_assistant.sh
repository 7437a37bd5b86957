#!/usr/bin/env bash
# Create .venv-ha with Home Assistant 2024.3.3 for the text-to-speech tests (its pins clash with ours).
# Idempotent: a complete venv (marked by .venv-ha/.installed-VERSION) is left as it is.
# The requirements of the integrations the tests load are installed here, so that the tests can
# start `hass --skip-pip` and never install anything (or reach the network) while they run.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
PY="${PY:-python3}"
VENV="${HA_VENV:-.venv-ha}"
VERSION="2024.3.3"
MARK="$VENV/.installed-$VERSION"
# demo (TTS provider + media players) and what it pulls in, http/api/onboarding for the REST API,
# the integrations Home Assistant always loads (frontend above all: without it, recovery mode),
# google_translate for a tts.* entity that tts.speak can address (it only fetches audio on playback);
# mqtt (paho-mqtt 1.6.1) for the entities the agent publishes by MQTT discovery (tests/test_mqtt.py).
DOMAINS="demo http api onboarding auth tts google_translate mqtt media_player air_quality
alarm_control_panel binary_sensor button camera calendar climate cover date datetime event fan
humidifier light lock number select sensor siren stt switch text time update vacuum water_heater
weather mailbox notify image_processing device_tracker frontend backup cloud application_credentials
hardware logger network system_health automation person scene script tag zone counter input_boolean
input_button input_datetime input_number input_select input_text schedule timer"
# A script newer than the mark (new requirements) runs again; pip skips what is installed.
if [ -f "$MARK" ] && [ "$MARK" -nt "$SELF" ] && [ -x "$VENV/bin/hass" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "homeassistant==$VERSION"
# shellcheck disable=SC2086
REQS=$("$VENV/bin/python" - $DOMAINS <<'PYEOF'
import json, pathlib, sys
import homeassistant.components as components
root = pathlib.Path(components.__file__).parent
seen, reqs, todo = set(), set(), list(sys.argv[1:])
while todo:
    domain = todo.pop()
    if domain in seen:
        continue
    seen.add(domain)
    manifest = root / domain / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        reqs.update(data.get("requirements", []))
        todo += data.get("dependencies", []) + data.get("after_dependencies", [])
print(" ".join(sorted(reqs)))
PYEOF
)
# shellcheck disable=SC2086
# josepy 2 dropped what acme (via hass-nabucasa, the cloud integration) still imports.
"$VENV/bin/pip" install -q $REQS "josepy<2"
"$VENV/bin/hass" --version >/dev/null
touch "$MARK"
echo "Home Assistant $VERSION installed in $VENV with: $REQS"
