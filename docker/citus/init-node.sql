-- Run once on every node when its data directory is created (as the image's
-- superuser, in database pymem): the extensions pymem needs. Citus then
-- propagates pymem's roles, tables and functions from the coordinator.
create extension if not exists citus;
create extension if not exists pgcrypto;
create extension if not exists vector;
