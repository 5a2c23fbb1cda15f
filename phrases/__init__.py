"""The verdict bank: 2 moods x 4 slots x 16 fragments = 131,072 spoken verdicts, their rendering
to DAC clips with espeak-ng, the SD clip bank and playback through sounddevice.
"""
