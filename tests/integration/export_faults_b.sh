#!/usr/bin/env bash
# export_faults_b.sh -- the exporter-lifecycle half of export_faults.sh:
# a flush that times out and a retry time shared through the buffer (a3),
# a bounded close with a request in flight (n), the pass at close (p), and
# a claim that outlives its killed exporter (o). See export_faults.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/export_faults.sh" lifecycle
