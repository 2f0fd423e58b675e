"""Tests of backup (备份) and restore (恢复): the archive format, database facts and the commands."""
