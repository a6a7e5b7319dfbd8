-- The 5-session Brier skill of the replayed predictions, August 2024 apart from the rest
-- (docs/benchmarks.md, "Calibrated confidence and the scorecard"). Run after `trading replay tests/data/asx-daily`:
--   sqlite3 -header -column STATE_DIR/trading.db < docs/month-skill.sql
WITH r AS (
  SELECT substr(p.session, 1, 7) AS month, p.probability_5 AS p,
         CASE p.action WHEN 'HOLD' THEN abs(o.forward_return) < 0.025
                       WHEN 'BUY' THEN o.forward_return > 0 ELSE o.forward_return < 0 END AS y
  FROM predictions p JOIN outcomes o ON o.prediction_id = p.id AND o.horizon = 5
  WHERE p.origin = 'replay' AND p.probability_5 IS NOT NULL)
SELECT month = '2024-08' AS aug_2024, count(*) AS n,
       round(avg((p - y) * (p - y)), 4) AS brier,
       round(avg(y) * (1 - avg(y)), 4) AS climatology,
       round(1 - avg((p - y) * (p - y)) / (avg(y) * (1 - avg(y))), 3) AS skill
FROM r GROUP BY 1;
