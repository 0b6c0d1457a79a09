#!/usr/bin/env bash
# Foul weather on the push side against the release build, every scenario bounded in time and
# connections on 127.0.0.1 (about 2 minutes): unsigned bodies within the memory limit, trickled
# webhook bodies and a slowloris from the scraper's own address leaving scrapes through, refusal
# logs rate-limited, a body naming 36,000 numbers handled in linear time.
set -euo pipefail
python3 benches/push_weather.py all --binary target/release/whatsapp_exporter
