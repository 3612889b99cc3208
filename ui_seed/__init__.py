"""The seed Kivy UI that bootstrap plants behind ``display_yourself``.

Not built yet (issue 6).
"""
