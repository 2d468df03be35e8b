.PHONY: run test soak

# run starts the service on :8080, with a private PostgreSQL under .data/ unless DATABASE_URL is set.
run:
	@scripts/run.sh

# test runs static checks and the whole suite against a throwaway PostgreSQL.
test:
	@scripts/test.sh

# soak runs the long load, chaos and fuzzing runs that do not fit make test (about 12 minutes).
soak:
	@scripts/soak.sh
