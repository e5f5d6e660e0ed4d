"""What a setting's value may be written as: a number, an expression of the frame number
t, or a keyframe schedule. Syntax only: no torch, nothing of the dream."""
