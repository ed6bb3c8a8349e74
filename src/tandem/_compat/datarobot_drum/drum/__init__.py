"""``datarobot_drum.drum``: the parts of DRUM's runner that model code imports."""
