-- usage_jsonb_greatest keeps, key by key, the larger of two {"reason": count}
-- objects: a day recomputed from minutes of which the oldest were already
-- dropped must not lower what was counted when they were all there.
CREATE FUNCTION usage_jsonb_greatest(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
        SELECT k, max(v::bigint) AS v
          FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}')) UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{}'))) AS e (k, v)
         GROUP BY k) AS s
$$;
