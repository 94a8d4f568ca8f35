-- bench/run.py scenario "paced": each connection sends its next request
-- WRK_PACE_MS milliseconds after the previous response (wrk's delay() is in
-- whole milliseconds); bench/run.py picks the connection count so that the
-- offered rate is half of Granian's hello rate from the same run.
local pace = tonumber(os.getenv("WRK_PACE_MS") or "2")

function delay()
   return pace
end
