-- PostgreSQL only: the change generation is bumped at commit time. (SQLite writers
-- serialize anyway.)
SELECT 1;
