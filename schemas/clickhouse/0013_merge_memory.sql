-- Background merges of the wide tables in bounded memory. Placeholders as in 0001_tables.sql.
--
-- The consumer inserts a part per batch (a few thousand rows), and the engine merges those parts in
-- the background. A merge of small parts used the horizontal algorithm (all columns of every part at
-- once, 8,192 rows per block): with cdrs' dozens of columns and its `raw` text, a merge held up to ~320 MB
-- (MemoryTracking) in the embedded engine, the largest part of the consumer's peak RSS. The vertical
-- algorithm merges the sorting key first, then one column at a time, and smaller merge blocks bound
-- what one column holds. Measured on the consumer's backlog (chDB, 190 k rows in 5,000-record
-- batches, one process): MemoryTracking peak 339 -> 84 MB, VmHWM 803 -> 738 MB; bench/consumer.py,
-- same runs: consumer peak RSS 795 -> 691 MB and 779 -> 695 MB, rows/s within the runs' noise
-- (x0.85 and x1.28). A smaller merge block alone (horizontal merges) changed nothing (peak 324 MB).
-- Only how merges run changes: parts, rows and reads stay the same (tests/test_merge_memory.py).
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster} MODIFY SETTING
    merge_max_block_size = 1024,
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1;

ALTER TABLE {db}.call_events{on_cluster} MODIFY SETTING
    merge_max_block_size = 1024,
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1;

ALTER TABLE {db}.failed_events{on_cluster} MODIFY SETTING
    merge_max_block_size = 1024,
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1;
