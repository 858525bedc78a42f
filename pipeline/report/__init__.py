"""Reports: an issue's figures, growth over time, and their charts and pages.

``figures`` (an issue's report from the store's counts, the sparkline), ``growth``
(new, lost, net and total per list in the newsletter's time zone), ``charts`` (pygal
SVGs with no script and no inline style, so the strict CSP holds) and ``page`` (the
HTML of the dashboard and of ``brief report ISSUE --html``).
"""
