"""The actors' logic, framework-free: pure cores (actors.core) and the shells around them.

Importing the package first decides which build of the pure cores runs (`actors._compiled`).
"""

from actors import _compiled as _compiled  # installs the build choice first
