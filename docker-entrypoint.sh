#!/bin/sh
# The image's entry point. It only hands over to the service, which does
# its own waiting: `serve` retries PostgreSQL for STARTUP_TIMEOUT_SECONDS
# and migrates it, lookups answer without Redis until Redis comes, and the
# consumer reconnects to the broker by itself. Waiting here instead would
# have to work out the hosts from DATABASE_URL, REDIS_URL or the *_HOST
# parts exactly as the service does, and a second copy of that rule drifts.
set -eu
exec warehouse-stock "$@"
