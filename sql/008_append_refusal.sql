-- An append whose expected version is stale must fail as a statement, not by writing fewer rows: in
-- pipeline mode its transaction's COMMIT is already on its way when the rows come back, so a short
-- write would commit. `refused` lists the stale streams ("<stream> <expected> <head>" per line).
CREATE FUNCTION events_refuse_stale(refused text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'OR409', DETAIL = refused;
    END IF;
END $$;
