-- report_never_retried also lists the recipients of a message greylisting
-- deferred at DATA (greylist.stage: data), whose DATA row names no
-- recipient when the message had several: they are taken from its RCPT
-- rows (shared/report_views.sql). The views are replaced from the shared
-- text (CREATE OR REPLACE: the same columns), so views of the
-- administrator's own on them stay.
{{template "report_views.sql"}}
