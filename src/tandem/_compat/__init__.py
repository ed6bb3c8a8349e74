"""Tandem's stand-in for DataRobot's ``datarobot_drum`` package (used only when it is absent).

Never imported under this name by models: ``_tandem_drum.CompatFinder`` serves the
``datarobot_drum`` folder below as the top-level ``datarobot_drum`` package when DataRobot's own
is not installed. It is kept inside ``tandem`` so no installed file collides with DRUM's.
"""
