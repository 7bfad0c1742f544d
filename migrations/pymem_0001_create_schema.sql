-- Schema `memory` and the extensions pymem needs.
-- pgcrypto (digests, encryption) and vector (pgvector, semantic recall) are
-- installed into `public` when missing; an existing installation elsewhere is
-- left where it is. Takes no locks on existing objects.
create extension if not exists pgcrypto with schema public;
create extension if not exists vector with schema public;

create schema memory;
comment on schema memory is
    'pymem: conversational memory. Functions and views are the API; tables are implementation.';
