-- report_never_retried also lists the recipients of a message greylisting
-- deferred at DATA (greylist.stage: data), whose DATA row names no
-- recipient when the message had several: they are taken from its RCPT
-- rows (shared/report_views.sql). The views are dropped and made again
-- from the shared text.
DROP VIEW report_daily;
DROP VIEW report_never_retried;
DROP VIEW report_retry_delay;
{{template "report_views.sql"}}
