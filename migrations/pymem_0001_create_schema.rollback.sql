-- Removes schema `memory` with everything in it. The extensions stay: other
-- schemas may use pgcrypto or vector, and dropping them is a DBA's decision.
drop schema memory cascade;
