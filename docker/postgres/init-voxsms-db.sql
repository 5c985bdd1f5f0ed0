-- Runs once, when the postgres container initialises an empty data volume
-- (files in /docker-entrypoint-initdb.d/ run as POSTGRES_USER against POSTGRES_DB).
-- The Airflow metadata database `airflow` is created by the image itself (POSTGRES_DB);
-- this adds the application database behind the `voxsms_db` connection: failed-number
-- tables and the send ledger that the example DAGs write.
CREATE USER voxsms WITH PASSWORD 'voxsms';
CREATE DATABASE voxsms OWNER voxsms;
