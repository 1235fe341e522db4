"""Demo data: datagen writes seeded landing files for the demo use cases (`prescore datagen`)."""
