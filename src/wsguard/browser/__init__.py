"""The browser client (``wsguard.js`` and the modules it imports) and the ``--dev`` demo page.

Plain files, served by :mod:`wsguard.server.static`; this folder is also the npm package.
"""
