"""The console: the ``le-ray`` parser tree (:mod:`.console`), the arguments every entry point shares
(:mod:`.args`), the command table (:mod:`.commands`) and the runners' console output (:mod:`.echo`)."""
