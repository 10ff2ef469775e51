"""The explorer's command-line programs (index build, class retrieval) and what they share; the library they
call lives in ``embedding``, ``index`` and ``retrieval``."""
