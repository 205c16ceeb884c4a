"""Internal: reaching a broker: broker URLs and kombu connections (`connection`), and the
embedded in-process broker behind `memory://` (`embedded`, adapted to kombu by `broker`).
"""
