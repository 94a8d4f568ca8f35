-- POST a 10 KB body (bench/run.py scenario post10k)
wrk.method = "POST"
wrk.body = string.rep("x", 10240)
wrk.headers["Content-Type"] = "application/octet-stream"
