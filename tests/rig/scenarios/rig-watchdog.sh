# The rig's own watchdog: this rig host stops its heartbeat and then does
# nothing, as a hung one would; the host must end it within rig-hung-after
# seconds and call it hung (rig-expect: hung makes that the pass).
# rig-timeout: 240
# rig-hung-after: 15
# rig-expect: hung
# shellcheck shell=sh
set -u

kill "$(cat /tmp/rig-heartbeat.pid)" || rig_fail "no heartbeat to stop"
rig_info "heartbeat stopped; waiting to be ended"
sleep 200
rig_fail "the rig host was not ended as hung"
