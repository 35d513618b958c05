"""The imperative shell: cluster clients, the reconciler, kopf handlers and metrics. Reads, calls the core,
writes; decides nothing itself. Never imports the sandbox or the face."""
